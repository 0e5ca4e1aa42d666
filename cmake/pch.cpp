// Compiles the precompiled header once; every other target reuses it.
#include "cmake/pch.h"
