"""``python -m vae_helpers``: see ``vae_helpers.cli``."""

try:
    from vae_helpers.cli import main
except KeyboardInterrupt:  # Ctrl-C during TensorFlow's slow import: no traceback
    raise SystemExit(130) from None

raise SystemExit(main())
