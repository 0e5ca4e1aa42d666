# The two commands a newcomer needs: `make demo` and `make test`. Both bootstrap first.
# GPU machines (torch already installed, no OpenCV): `make gpu-test`.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_ARGS ?=

.PHONY: all bootstrap configure build test demo gpu-build gpu-test clean

all: build

# scripts/bootstrap.sh prints the python whose torch we build against.
$(BUILD)/.python:
	@mkdir -p $(BUILD)
	@scripts/bootstrap.sh > $(BUILD)/.python.tmp && mv $(BUILD)/.python.tmp $(BUILD)/.python

bootstrap: $(BUILD)/.python

$(BUILD)/build.ninja: $(BUILD)/.python CMakeLists.txt
	cmake -S . -B $(BUILD) -G Ninja -DT4G_PYTHON=$$(cat $(BUILD)/.python) $(CMAKE_ARGS)

configure: $(BUILD)/build.ninja

build: $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 900

demo: build
	$(BUILD)/bin/t4g demo --out runs/demo

# GPU machines: system python3 carries torch 2.11+cu130; there is no OpenCV and no apt.
gpu-build:
	T4G_PYTHON=$${T4G_PYTHON:-python3} T4G_SKIP_APT=1 $(MAKE) build BUILD=build-gpu CMAKE_ARGS="-DT4G_WITH_OPENCV=OFF $(CMAKE_ARGS)"

gpu-test: gpu-build
	cd build-gpu && ctest --output-on-failure -j $(JOBS) --timeout 900

clean:
	rm -rf $(BUILD)
