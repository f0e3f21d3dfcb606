"""Stand-in for ansible-test's get-pip-<version>.py (its download host is out of reach here; scripts/sanity installs it).

ansible-test runs this in a new, pip-less virtual environment with pip's install arguments, e.g.
  --disable-pip-version-check pip==24.2 --no-setuptools --no-wheel
It runs the pip wheel that ships with Python (ensurepip) from sys.path, as get-pip.py runs its own
embedded one, and installs the requested packages from the package index into this environment.
"""
import glob
import os
import sys

import ensurepip

wheel = sorted(glob.glob(os.path.join(os.path.dirname(ensurepip.__file__), '_bundled', 'pip-*.whl')))[-1]
sys.path.insert(0, wheel)

from pip._internal.cli.main import main  # noqa: E402

args = [arg for arg in sys.argv[1:] if arg not in ('--no-setuptools', '--no-wheel')]
sys.exit(main(['install', '--upgrade', '--force-reinstall'] + args))
