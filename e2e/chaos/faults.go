package main

// A fault is one thing a production guard must survive, and the tests that
// stage it on the local stack; each of them asserts that nothing was lost (no
// data, no snapshot, no user change dropped) and that the application is
// thawed. Tests in package ./e2e unless a package is named.
type fault struct {
	what  string
	tests []test
	// gap says what of the fault no test stages yet.
	gap string
}

type test struct {
	pkg, name string
}

const e2ePkg = "github.com/snapgate/snapgate/e2e"

func e2e(names ...string) []test {
	ts := make([]test, len(names))
	for i, n := range names {
		ts[i] = test{e2ePkg, n}
	}
	return ts
}

var faults = []fault{
	{what: "snapgate SIGKILLed between freeze and cut", tests: e2e(
		"TestWhileSnapgateIsDown",
		"TestARestartedSnapgateThawsWhatADeadOneFroze")},
	{what: "a pre-hook fails or hangs in 1 of 3 pods", tests: e2e(
		"TestAFailingPreHookDeniesAndThawsEveryPod",
		"TestAHangingPreHookTimesOutAndThaws")},
	{what: "the CSI driver errors, or does not cut in time", tests: e2e(
		"TestDriverErrorDeniesWithTheDriversMessage",
		"TestSlowSnapshotsAreDeniedThenAdmittedOnRetryWithTheSameSet",
		"TestASetNeverReadyIsToldOverdue")},
	{what: "a retried admission after the snapshots exist", tests: e2e(
		"TestSlowSnapshotsAreDeniedThenAdmittedOnRetryWithTheSameSet",
		"TestStatusWritesDuringTheWaitDoNotTakeASecondSet")},
	{what: "kubectl apply --dry-run=server", tests: e2e(
		"TestDryRunCreatesNothing")},
	{what: "snapgate down", tests: e2e(
		"TestWhileSnapgateIsDown")},
	{what: "a user without pods/exec sets a hook; fuzzed annotations", tests: append(e2e(
		"TestAUserWhoMayNotExecCannotRunAnnotationHooks",
		"TestBadAnnotationsAreDeniedByName"),
		test{"github.com/snapgate/snapgate/snapshotter/policy", "FuzzParseAnnotations"})},
	{what: "a tampered rollback annotation", tests: e2e(
		"TestRollbackToAForeignOrUnreadySetIsRefused")},
	{what: "a scale-down with whenScaled: Delete on a failing driver", tests: e2e(
		"TestAScaleDownThatDeletesVolumesIsRefusedWhenItsSnapshotsFail")},
	{what: "certificate rotation under load; TLS older than 1.2", tests: e2e(
		"TestBuiltinCertificatesRotateWithoutLosingARequest",
		"TestCertManagerIssuesInjectsAndRotates",
		"TestTLSOlderThan12IsRefused")},
	{what: "the API server restarted mid-set and mid-rollback", tests: e2e(
		"TestWhenTheAPIServerRestarts")},
	{what: "the leader killed mid-rollback", tests: e2e(
		"TestRollbackResumesAfterTheControllerIsKilled",
		"TestTheLeaderKilledMidRollbackIsResumedByTheOtherReplica")},
}
