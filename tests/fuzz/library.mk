# Fuzzing target "library": see tests/fuzz/README.
