"""Deployment runtimes: ONNX and TFLite export with parity checks, latency measurement, lookup tables."""
