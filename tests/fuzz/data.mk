# Fuzzing target "data": see tests/fuzz/README.
