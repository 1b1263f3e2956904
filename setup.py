from setuptools import setup
from setuptools.config.setupcfg import read_configuration

# setup.cfg's `packages = find:` sees only top-level folders; the lab server extension `aistack_lab`
# lives in labextension/ next to its TypeScript sources (its package_dir is in setup.cfg).
setup(packages=read_configuration("setup.cfg")["options"]["packages"] + ["aistack_lab"])
