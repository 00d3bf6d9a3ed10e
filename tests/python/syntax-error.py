# A script that does not compile.
API_VERSION = 2

def open(readonly)
    return 1
