// t4g: the one command line. Subcommands only parse flags and call into the libraries.
#include "common/error.h"
#include <iostream>
int main(int argc, char** argv) {
  try {
    return 0;
  } catch (const t4g::Error& e) {
    std::cerr << "t4g: error: " << e.what() << std::endl;
    return 1;
  }
}
