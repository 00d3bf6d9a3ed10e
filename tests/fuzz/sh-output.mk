# Fuzzing target "sh-output": see tests/fuzz/README.
