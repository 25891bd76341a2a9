"""`python -m affinegan_tf` is the same as the `affinegan-tf` command."""

import sys

from affinegan_tf.cli import main

sys.exit(main())
