# Fuzzing target "frames": see tests/fuzz/README.
