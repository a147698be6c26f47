# Entry points a new user needs: `make run` and `make test`. Both install
# missing Debian packages first (scripts/deps.sh), then configure and build
# with CMake. `make test` runs the whole suite twice: a normal build and one
# under AddressSanitizer + UndefinedBehaviorSanitizer. `make fuzz` builds the
# fuzz harnesses (tests/fuzz) with clang and libFuzzer in their own folder
# and replays each seed corpus; `make fuzz-run` fuzzes each for a while.

BUILD ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 600
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all deps build build-asan test test-fast run bench clean format fuzz-deps fuzz fuzz-run

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

# clang with libFuzzer; -Werror stays gcc's (clang warns differently).
fuzz-deps:
	@scripts/deps.sh fuzz

$(FUZZ_BUILD)/CMakeCache.txt:
	CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLR_FUZZ=ON \
		-DLR_WERROR=OFF

fuzz: fuzz-deps $(FUZZ_BUILD)/CMakeCache.txt
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzzers
	FUZZ_BUILD=$(FUZZ_BUILD) scripts/fuzz.sh smoke

# Each harness for FUZZ_SECONDS, one after another (FUZZ_NAMES: some only).
fuzz-run: fuzz
	FUZZ_BUILD=$(FUZZ_BUILD) scripts/fuzz.sh run $(FUZZ_SECONDS) $(FUZZ_NAMES)

run: build
	@scripts/run.sh $(BUILD)

bench: build
	@scripts/deps.sh bench
	@bench/run_all.sh $(BUILD)

format:
	clang-format -i include/*.h src/*/*.c src/*/*.h tests/unit/*.c bench/*.c

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
