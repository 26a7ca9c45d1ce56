"""Test set-up: 8 simulated CPU devices, quiet TensorFlow, no GPU for TF."""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
