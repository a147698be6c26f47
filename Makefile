# Entry points a new user needs: `make run` and `make test`. Both install
# missing Debian packages first (scripts/deps.sh), then configure and build
# with CMake. `make test` runs the whole suite twice, in a normal build and
# in one under AddressSanitizer + UndefinedBehaviorSanitizer, then the tests
# labelled `threads` in a ThreadSanitizer build. `make fuzz` builds the
# fuzz harnesses (tests/fuzz) with clang and libFuzzer in their own folder
# and replays each seed corpus; `make fuzz-run` fuzzes each for a while.
# `make install` builds, then installs under PREFIX (staged under DESTDIR
# when set); `make uninstall` with the same PREFIX and DESTDIR removes it.

BUILD ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 600
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
PREFIX ?= /usr/local
DESTDIR ?=
# Absolute and without a trailing slash, as CMake writes the prefix in its
# list of installed files ($(BUILD)/install_manifest.txt).
INSTALL_PREFIX = $(abspath $(PREFIX))
INSTALL_DESTDIR = $(if $(DESTDIR),$(abspath $(DESTDIR)))

.PHONY: all deps deps-build build build-asan build-tsan test test-tsan test-fast run bench clean \
	format fuzz-deps fuzz fuzz-run install uninstall

all: build

deps:
	@scripts/deps.sh

# Building and installing need only the build packages (no test tools).
deps-build:
	@scripts/deps.sh build

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: deps-build $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

$(ASAN_BUILD)/CMakeCache.txt:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DLR_SANITIZE=ON

build-asan: deps-build $(ASAN_BUILD)/CMakeCache.txt
	cmake --build $(ASAN_BUILD) -j $(JOBS)

$(TSAN_BUILD)/CMakeCache.txt:
	cmake -S . -B $(TSAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLR_TSAN=ON

build-tsan: deps-build $(TSAN_BUILD)/CMakeCache.txt
	cmake --build $(TSAN_BUILD) -j $(JOBS)

# ThreadSanitizer puts its shadow memory at fixed addresses, which a kernel
# with high-entropy address randomisation (vm.mmap_rnd_bits above 28) may
# have mapped already: the program then dies at start with "unexpected
# memory mapping". So the TSan pass runs with randomisation off (setarch -R,
# inherited by every process a test starts) where the kernel allows it.
TSAN_RUN = $(shell setarch "$$(uname -m)" -R true 2>/dev/null && echo setarch "$$(uname -m)" -R)

# The normal build's suite, then the ASan+UBSan build's, then the TSan
# build's tests labelled `threads` (tests/CMakeLists.txt says which: the
# unit tests that share a store or router between threads or build groups
# on several, and the gateway groups that use its worker threads). Only
# those: the whole suite under TSan took 2 min 42 s on 2 cores, and the
# rest uses threads little or not at all. Measured stage by stage with
# JOBS=2 on a 2-core machine (2026-12-06, 76 tests, 10 labelled): the
# builds 50 s, 35 s and 43 s; the normal pass 318 s, the ASan pass 532 s
# and the TSan pass 165 s; 19 min in all.
test: deps build build-asan build-tsan
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	cd $(ASAN_BUILD) && ctest --output-on-failure -j $(JOBS)
	cd $(TSAN_BUILD) && $(TSAN_RUN) ctest --output-on-failure -j $(JOBS) -L threads

# The TSan pass alone.
test-tsan: deps build-tsan
	cd $(TSAN_BUILD) && $(TSAN_RUN) ctest --output-on-failure -j $(JOBS) -L threads

test-fast: deps build
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

# The install prefix is a setting of the build folder: set it (configure
# again) only when it changes, then build what is not built yet and install.
# What goes where: packaging/CMakeLists.txt. CMake's manifest leaves DESTDIR
# out, so the files put are listed again with it, in installed_files.txt.
install: deps-build $(BUILD)/CMakeCache.txt
	@grep -qxF 'CMAKE_INSTALL_PREFIX:PATH=$(INSTALL_PREFIX)' $(BUILD)/CMakeCache.txt || \
		cmake -S . -B $(BUILD) -DCMAKE_INSTALL_PREFIX='$(INSTALL_PREFIX)'
	cmake --build $(BUILD) -j $(JOBS)
	DESTDIR='$(INSTALL_DESTDIR)' cmake --install $(BUILD)
	@awk -v d='$(INSTALL_DESTDIR)' '{ print d $$0 }' $(BUILD)/install_manifest.txt \
		>$(BUILD)/installed_files.txt

# Removes the files the last `make install` from $(BUILD) put, when it was
# given this PREFIX and DESTDIR.
uninstall:
	@scripts/uninstall.sh $(BUILD)/installed_files.txt '$(INSTALL_DESTDIR)$(INSTALL_PREFIX)'

run: deps build
	@scripts/run.sh $(BUILD)

bench: build
	@scripts/deps.sh bench
	@bench/run_all.sh $(BUILD)

format:
	clang-format -i include/*.h src/*/*.c src/*/*.h tests/unit/*.c bench/*.c

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) $(FUZZ_BUILD)
