# Bytecode for the Lambda runtime, one recipe for the layer (./Makefile) and
# the functions (functions/Makefile).
#
# Lambda mounts the layer (/opt) and the function (/var/task) read-only, so
# Python cannot cache the bytecode it compiles there: without .pyc files in
# the zip, every cold start compiles every module it imports again. Compiled
# here with an interpreter of the runtime's version (CPython 3.13: the magic
# number in each .pyc must match, or Python ignores it) and
# `--invalidation-mode unchecked-hash`: a .pyc that names its source by hash
# and is never checked against it, so neither the zip's timestamps nor a
# check at import can make Python ignore it. Optimisation level 0: Lambda
# runs python without -O. Paths in tracebacks are where Lambda mounts the files.

LAMBDA_PYTHON_VERSION ?= 3.13
LAMBDA_PYTHON ?= python$(LAMBDA_PYTHON_VERSION)

# $(call compile_bytecode,folder,path Lambda mounts it at)
define compile_bytecode
	@"$(LAMBDA_PYTHON)" -c 'import sys; sys.exit(sys.version_info[:2] != tuple(map(int, "$(LAMBDA_PYTHON_VERSION)".split("."))))' 2>/dev/null || \
	  { echo "error: $(LAMBDA_PYTHON) is not a working Python $(LAMBDA_PYTHON_VERSION): bytecode for the Lambda runtime needs one (set LAMBDA_PYTHON)" >&2; exit 1; }
	find "$(1)" -depth \( -name __pycache__ -o -name '*.pyc' \) -exec rm -rf {} +
	"$(LAMBDA_PYTHON)" -m compileall -q -o 0 --invalidation-mode unchecked-hash -s "$(1)" -p "$(2)" "$(1)"
endef
