"""Ships ctrbench's own configs inside the package (``benchmark/_config``), so that a non-editable
``pip install .`` can run ``ctrbench run --expid DCN_tiny`` from any folder. Everything else is in
pyproject.toml; a source checkout and an editable install read ``config/`` itself."""

import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


class BuildWithConfigs(build_py):
    def run(self):
        super().run()
        if self.editable_mode:
            return
        target = os.path.join(self.build_lib, "benchmark", "_config")
        shutil.rmtree(target, ignore_errors=True)
        for kind in ("model_config", "dataset_config"):
            os.makedirs(os.path.join(target, kind))
            for name in sorted(os.listdir(os.path.join(HERE, "config", kind))):
                if name.endswith(".yaml"):
                    shutil.copy2(os.path.join(HERE, "config", kind, name), os.path.join(target, kind, name))


setup(cmdclass={"build_py": BuildWithConfigs})
