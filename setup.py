"""Distribution ``facenas``, imported as ``facenas.*``.

The repository's top-level folders map into the ``facenas`` namespace, so nothing named
``adapters``, ``plugins`` or ``recipes`` lands at the top of site-packages:

    facenas/   -> facenas            (core: CLI, registry, config, the NAS API in nas/, utils)
    adapters/  -> facenas.adapters   (InsightFace, NNI, runtimes)
    plugins/   -> facenas.plugins    (search methods)
    recipes/   -> facenas.recipes    (config modules and NNI experiment files)

Install torch first (``pip install torch==2.13.0`` takes the CPU wheel here); a bare torch
requirement with no torch installed would pull a multi-GB CUDA build.
"""
from setuptools import find_packages, setup

MAPPED = {"facenas.adapters": "adapters", "facenas.plugins": "plugins", "facenas.recipes": "recipes"}


def _packages() -> list[str]:
    pkgs = find_packages(include=["facenas", "facenas.*"])
    for prefix, directory in MAPPED.items():
        pkgs += [prefix] + [f"{prefix}.{p}" for p in find_packages(directory)]
    return pkgs


def _version() -> str:
    ns: dict = {}
    with open("facenas/__init__.py", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("__version__"):
                exec(line, ns)
    return ns["__version__"]


setup(
    name="facenas",
    version=_version(),
    description="Neural architecture search for face recognition on InsightFace data, run as NNI experiments",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=_packages(),
    package_dir=MAPPED,
    package_data={"facenas.recipes": ["nni/*.yml", "nni/*.yaml", "nni/spaces/*.json", "configs/*.py"],
                  "facenas.adapters": ["nni/*.js"]},
    include_package_data=True,
    install_requires=[
        "torch>=2.1",  # install the wheel for your platform first (CPU or CUDA)
        "numpy>=1.24",
        "scipy>=1.10",
        "opencv-python>=4.8",  # the same OpenCV insightface depends on; do not add -headless beside it
        "pyyaml>=6",
        "matplotlib>=3.7",
        "nni==3.0",
        "setuptools<81",  # nnictl imports pkg_resources, removed in setuptools 81
        "pytorch-lightning>=2.0",  # import nni.nas.nn.pytorch needs it
        "torchmetrics>=1.0",
        "onnx>=1.15",
        "onnxruntime>=1.17",
        "lightgbm>=4.0",
        "threadpoolctl>=3",  # one BLAS thread for the OFA search's small matrix products
        "insightface==2.1",
    ],
    extras_require={
        "tflite": ["tensorflow-cpu>=2.16"],
        "test": ["pytest>=8", "pytest-timeout>=2.2", "websockets>=11"],  # websockets: the portal test drives Chromium
        "all": ["tensorflow-cpu>=2.16"],
    },
    entry_points={
        "console_scripts": ["facenas=facenas.cli:main"],
        # Search methods are plugins: a third-party package declares its own entry point here
        # (see examples/facenas-random-search and ARCHITECTURE.md, "Adding a method").
        "facenas.methods": [
            "enas = facenas.plugins.enas",
            "ofa = facenas.plugins.ofa",
            "tnas = facenas.plugins.tnas",
        ],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
