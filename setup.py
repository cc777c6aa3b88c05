"""tfcompress: Keras 3 model compression (pruning, QAT, distillation, low-rank, clustering) to TFLite."""

from setuptools import Extension, find_packages, setup

# Native build (sparse kernels): the tfcompress sparse TFLite ops as a plain C shared library
# (no Python API), dlopen'ed as a LiteRT delegate. Flags: tflite_export/README.md, "Host build".
SPARSE_OPS = Extension(
    "tfcompress.export._tfc_sparse_ops",
    sources=["tflite_export/tfc_op.c", "tflite_export/tfc_format.c", "tflite_export/tfc_relayout.c",
             "tflite_export/tfc_kernels_portable.c", "tflite_export/tfc_kernels_x86.c", "tflite_export/tfc_kernels_x86_avx2.c",
             "tflite_export/tfc_kernels_aarch64.c",
             "tflite_export/tfc_sparse_delegate.c", "tflite_export/tfc_threads.c",
             "tflite_export/tfc_fused.c", "tflite_export/tfc_fused_kernels.c", "tflite_export/tfc_fused_x86.c"],
    depends=["tflite_export/tfc_tflite_abi.h", "tflite_export/tfc_sparse_ops.h", "tflite_export/tfc_internal.h",
             "tflite_export/tfc_threads.h"],
    extra_compile_args=["-O3", "-std=c11", "-ffp-contract=fast", "-Wno-psabi", "-DTFC_MULTIVERSION",
                        "-DTFC_X86_DISPATCH", "-pthread"],
    extra_link_args=["-pthread"],
    libraries=["m"],
)

setup(
    name="tfcompress",
    version="0.1.0",
    description="Keras 3 model-optimization toolkit: prune, quantize, distill, factorize, "
    "cluster, and lower to TFLite with sparse kernels.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["tfcompress", "tfcompress.*"]),
    install_requires=[
        # Checked to work together on this project's machines (see ../shared/DESIGN.md).
        "tensorflow==2.21.*",  # brings Keras 3.15
        "ai-edge-litert==2.3.*",
        "numpy>=1.26",
        # >=1.2, not 2.x: the bench extra's tensorflow-model-optimization 0.8.1 pins absl-py~=1.2;
        # TensorFlow 2.21 needs >=1.0 and nothing here needs 2.x (absl.logging exists in 1.x).
        "absl-py>=1.2",
        "scikit-learn>=1.3",  # offline digits data for the demo, tests and notebooks
        "matplotlib>=3.7",  # report plots
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-xdist>=3.5", "nbclient>=0.10", "nbformat>=5.9", "ipykernel>=6"],
        # Side-by-side comparisons only: tfmot runs on tf_keras (Keras 2) in benchmarks/.
        "bench": ["tensorflow-model-optimization==0.8.1", "tf-keras==2.21.*"],
    },
    entry_points={"console_scripts": ["tfcompress=tfcompress.cli:main"]},
    ext_modules=[SPARSE_OPS],
)
