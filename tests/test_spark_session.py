"""The session every job gets: what it is started with."""

from __future__ import annotations


def test_the_driver_jvm_retries_allocations_blocked_by_native_code_instead_of_failing(spark):
    """JDK 17's G1 gives up an allocation after two waits for threads in JNI critical sections (JDK-8192647); the
    session's JVM is started with more retries."""
    arguments = list(spark.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
                     .getInputArguments())
    assert "-XX:GCLockerRetryAllocationCount=100" in arguments
