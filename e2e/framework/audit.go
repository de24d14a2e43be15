package framework

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Request is one kind of request a user made, as the API server's audit log
// has it: a verb on a resource ("pods/exec" for a subresource) of an API
// group, and the object's name where one was named.
type Request struct {
	Verb, Group, Resource, Name string
}

// Audited returns every request user made that the API server audited
// (config/audit-policy.yaml: ServiceAccounts' requests), the rotated log
// included.
func (c *Cluster) Audited(t testing.TB, user string) map[Request]bool {
	t.Helper()
	out := map[Request]bool{}
	paths, _ := filepath.Glob(filepath.Join(c.Dir, "logs", "audit*.log"))
	if len(paths) == 0 {
		t.Fatalf("no audit log in %s/logs: the stack predates it; run make cluster-down && make cluster", c.Dir)
	}
	for _, path := range paths {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<24)
		for sc.Scan() {
			line := sc.Bytes()
			if !strings.Contains(string(line), user) {
				continue
			}
			var e struct {
				User      struct{ Username string } `json:"user"`
				Verb      string                    `json:"verb"`
				ObjectRef *struct {
					APIGroup    string `json:"apiGroup"`
					Resource    string `json:"resource"`
					Subresource string `json:"subresource"`
					Name        string `json:"name"`
				} `json:"objectRef"`
			}
			if json.Unmarshal(line, &e) != nil || e.User.Username != user || e.ObjectRef == nil {
				continue
			}
			res := e.ObjectRef.Resource
			if e.ObjectRef.Subresource != "" {
				res += "/" + e.ObjectRef.Subresource
			}
			out[Request{Verb: e.Verb, Group: e.ObjectRef.APIGroup, Resource: res, Name: e.ObjectRef.Name}] = true
		}
		f.Close()
		if err := sc.Err(); err != nil {
			t.Fatalf("read %s: %v", path, err)
		}
	}
	return out
}
