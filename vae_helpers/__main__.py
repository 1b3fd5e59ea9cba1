"""``python -m vae_helpers``: see ``vae_helpers.cli``."""

from vae_helpers.cli import main

raise SystemExit(main())
