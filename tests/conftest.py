"""Shared test setup: tests run on the CPU, with few threads, whatever machine they are on."""

import os

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("OMP_NUM_THREADS", "2")
