package webhook

import (
	"encoding/json"
	"fmt"
	"strings"

	"gomodules.xyz/jsonpatch/v2"

	"github.com/snapgate/snapgate/snapshotter"
	"github.com/snapgate/snapgate/snapshotter/policy"
)

// annotationPath is the JSON pointer of an annotation (RFC 6901 escapes '/').
func annotationPath(key string) string {
	return "/metadata/annotations/" + strings.NewReplacer("~", "~0", "/", "~1").Replace(key)
}

// recordPatch adds snapgate.io/last-set, last-snapshots and last-reason to an
// object whose annotations are current, and removes a skip annotation the change
// no longer needs.
func recordPatch(current map[string]string, plan *snapshotter.Plan) ([]jsonpatch.JsonPatchOperation, error) {
	snaps, err := json.Marshal(plan.SnapshotsByPVC())
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", policy.LastSnapshots, err)
	}
	record := map[string]string{
		policy.LastSet:       plan.Set,
		policy.LastSnapshots: string(snaps),
		policy.LastReason:    string(plan.Reason),
	}
	if current == nil {
		return []jsonpatch.JsonPatchOperation{{Operation: "add", Path: "/metadata/annotations", Value: record}}, nil
	}
	ops := make([]jsonpatch.JsonPatchOperation, 0, len(record))
	for _, k := range []string{policy.LastSet, policy.LastSnapshots, policy.LastReason} {
		// "add" replaces a value that is there already.
		ops = append(ops, jsonpatch.JsonPatchOperation{Operation: "add", Path: annotationPath(k), Value: record[k]})
	}
	return ops, nil
}

func removeAnnotation(key string) jsonpatch.JsonPatchOperation {
	return jsonpatch.JsonPatchOperation{Operation: "remove", Path: annotationPath(key)}
}
