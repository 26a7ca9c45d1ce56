"""hyperprompt-jax: HyperPrompt (He et al., ICML 2022) for T5 in JAX/Flax, the t5x way."""
import setuptools

_CORE = [
    "jax[cpu]>=0.10,<0.11",
    "flax>=0.12,<0.13",
    "optax>=0.2.8",
    "orbax-checkpoint>=0.12",
    "seqio>=0.0.20",
    "clu>=0.0.12",
    "gin-config>=0.5.0",
    "tensorflow-cpu>=2.16",
    "tensorflow-datasets>=4.9",
    "tensorboard>=2.16",  # clu metric_writers (TensorBoard summaries)
    "sentencepiece",
    "scikit-learn",
    "scipy",
    "matplotlib",
    "safetensors",
    "absl-py",
    "nltk>=3.8",  # the WordNet reader of hyperprompt_tasks.wordnet_data
]
# torch==2.13.0 is the CPU build available offline on the development machines.
_TORCH = ["torch==2.13.0", "transformers>=4.40"]

setuptools.setup(
    name="hyperprompt-jax",
    version="0.1.0",
    description="HyperPrompt: prompt-based task-conditioning of T5 in JAX/Flax (t5x compatible)",
    license="Apache 2.0",
    python_requires=">=3.10",
    packages=setuptools.find_packages(include=["hyperprompt_jax", "hyperprompt_jax.*"])
    + ["hyperprompt_tasks"],
    # The seqio task registrations live in tasks/ and install as `hyperprompt_tasks`,
    # a name that cannot clash with other projects' `tasks` packages.
    package_dir={"hyperprompt_tasks": "tasks"},
    include_package_data=True,
    install_requires=_CORE,
    extras_require={
        "test": ["pytest>=7", "pytest-xdist"] + _TORCH,
        "bench": _TORCH + ["peft"],
    },
)
