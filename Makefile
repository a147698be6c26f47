# Entry points a new user needs: `make run` and `make test`. Both install
# missing Debian packages first (scripts/deps.sh), then configure and build
# with CMake. `make test` runs the whole suite twice: a normal build and one
# under AddressSanitizer + UndefinedBehaviorSanitizer.

BUILD ?= build
ASAN_BUILD ?= build-asan
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all deps build build-asan test test-fast run bench clean format

all: build

deps:
	@scripts/deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

$(ASAN_BUILD)/CMakeCache.txt:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DLR_SANITIZE=ON

build-asan: deps $(ASAN_BUILD)/CMakeCache.txt
	cmake --build $(ASAN_BUILD) -j $(JOBS)

# The normal build's suite, then the sanitizer build's.
test: build build-asan
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	cd $(ASAN_BUILD) && ctest --output-on-failure -j $(JOBS)

test-fast: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

run: build
	@scripts/run.sh $(BUILD)

bench: build
	@scripts/deps.sh bench
	@bench/run_all.sh $(BUILD)

format:
	clang-format -i include/*.h src/*/*.c src/*/*.h tests/unit/*.c bench/*.c

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
