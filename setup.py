"""Build hook: wheels carry the shipped pretrained collection.

The metadata lives in setup.cfg. saved_models/ sits beside the package (it is
also where runs write by default), so package_data cannot reach it; build_py
copies the shipped collection, MANIFEST.json and the files it lists (six
~2.9 MB .keras files), into the wheel as keras_edd/saved_models/paper/, where
keras_edd.pretrained looks first. Editable installs read saved_models/ in place.
"""

import json
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

SHIPPED_COLLECTIONS = ("paper",)


class BuildWithPretrained(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads saved_models/ in place
        here = os.path.dirname(os.path.abspath(__file__))
        for collection in SHIPPED_COLLECTIONS:
            source = os.path.join(here, "saved_models", collection)
            manifest = os.path.join(source, "MANIFEST.json")
            if not os.path.isfile(manifest):
                continue  # a source tree without the collection: load_pretrained explains
            with open(manifest) as f:
                files = [entry["file"] for entry in json.load(f)["models"].values()]
            target = os.path.join(self.build_lib, "keras_edd", "saved_models", collection)
            os.makedirs(target, exist_ok=True)
            for name in ["MANIFEST.json", *files]:
                shutil.copyfile(os.path.join(source, name), os.path.join(target, name))


setup(cmdclass={"build_py": BuildWithPretrained})
