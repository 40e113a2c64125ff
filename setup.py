"""The packages and their data files; everything else is in pyproject.toml.

The page (web/) and the prompt library (prompts/) stay at the top of the repository and
ship inside the wheel as the packages moeviz.web and moeviz.prompts_data, their files as
package data (found at run time through importlib.resources: moeviz/resources.py).
pyproject.toml's `packages.find` cannot map a folder to a package under another name, so
the list is made here, and the package data with it: setuptools takes a pyproject.toml
package-data table instead of setup.py's, not as well. Each subfolder (web/js, web/css,
...) is a package of its own: setuptools ships a folder's files only from its own package.
"""
from setuptools import find_namespace_packages, setup


def data_package(package: str, folder: str) -> tuple[list[str], dict, dict]:
    names = [package, *(f"{package}.{sub}" for sub in find_namespace_packages(where=folder))]
    return names, {package: folder}, {name: ["*"] for name in names}


packages, package_dir = find_namespace_packages(include=["moeviz", "moeviz.*"]), {}
package_data = {"moeviz": ["data/*"]}   # the demo model
for package, folder in {"moeviz.web": "web", "moeviz.prompts_data": "prompts"}.items():
    names, where, data = data_package(package, folder)
    packages += names
    package_dir.update(where)
    package_data.update(data)

setup(packages=packages, package_dir=package_dir, package_data=package_data)
