# @TEST-DOC: The package loads, in bare and in default mode, without any error or warning.
#
# @TEST-EXEC: zeek -b $PACKAGE %INPUT >out 2>&1
# @TEST-EXEC: zeek $PACKAGE %INPUT >>out 2>&1
# @TEST-EXEC: zeek --parse-only $PACKAGE $PACKAGE/wait-for-bridge.zeek %INPUT >>out 2>&1
# @TEST-EXEC: test ! -s out || { cat out; false; }

