package presets

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPostgresPresetConnectsAsTheImagesSuperuser runs the preset's script with
// a stand-in psql that prints the user, database and password it was given.
// Which user and password each image's server accepts is checked against the
// real images on the stack's node (e2e); this pins the choice for every way the
// images let a user configure them.
func TestPostgresPresetConnectsAsTheImagesSuperuser(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(secret, []byte("from-file"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		env  []string
		want string
	}{
		"the official image with no POSTGRES_USER connects as postgres": {
			env: []string{"POSTGRES_PASSWORD=pw"}, want: "-U postgres -d postgres PGPASSWORD=pw",
		},
		"the official image's POSTGRES_USER is its superuser": {
			env: []string{"POSTGRES_USER=app", "POSTGRES_PASSWORD=pw", "POSTGRES_DB=appdb"}, want: "-U app -d postgres PGPASSWORD=pw",
		},
		"a user and a password from files": {
			env: []string{"POSTGRES_USER_FILE=" + secret, "POSTGRES_PASSWORD_FILE=" + secret}, want: "-U from-file -d postgres PGPASSWORD=from-file",
		},
		"a PGPASSWORD the container sets is kept": {
			env: []string{"POSTGRES_PASSWORD=pw", "PGPASSWORD=own"}, want: "-U postgres -d postgres PGPASSWORD=own",
		},
		"Bitnami's postgres with POSTGRES_PASSWORD": {
			env: []string{"BITNAMI_APP_NAME=postgresql", "POSTGRES_PASSWORD=pw"}, want: "-U postgres -d postgres PGPASSWORD=pw",
		},
		"Bitnami's postgres with the password only in a file": {
			env: []string{"BITNAMI_APP_NAME=postgresql", "POSTGRESQL_PASSWORD_FILE=" + secret}, want: "-U postgres -d postgres PGPASSWORD=from-file",
		},
		"Bitnami with a custom user still checkpoints as postgres, with postgres's password": {
			env:  []string{"BITNAMI_APP_NAME=postgresql", "POSTGRESQL_USERNAME=app", "POSTGRESQL_PASSWORD=apppw", "POSTGRESQL_POSTGRES_PASSWORD=superpw"},
			want: "-U postgres -d postgres PGPASSWORD=superpw",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			psql := "#!/bin/sh\nwhile [ $# -gt 0 ]; do case $1 in -U|-d) printf '%s %s ' \"$1\" \"$2\"; shift;; esac; shift; done\necho \"PGPASSWORD=${PGPASSWORD:-}\"\n"
			if err := os.WriteFile(filepath.Join(dir, "psql"), []byte(psql), 0o755); err != nil {
				t.Fatal(err)
			}
			argv := All["postgres"].Pre
			cmd := exec.Command(argv[0], argv[1:]...)
			cmd.Env = append([]string{"PATH=" + dir + ":/usr/bin:/bin"}, tc.env...)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("preset: %v: %s", err, out)
			}
			if got := strings.TrimSpace(string(out)); got != tc.want {
				t.Errorf("psql was given %q, want %q", got, tc.want)
			}
		})
	}

	t.Run("a container without psql is told so", func(t *testing.T) {
		argv := All["postgres"].Pre
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = []string{"PATH=" + t.TempDir()} // sh is found from the test's own PATH
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "no psql in this container's PATH") {
			t.Fatalf("want a failure naming psql, got %v: %s", err, out)
		}
	})
}

// The postgres check asks every database that allows connections, names
// included that have a space, and fails naming the one that does not answer.
func TestPostgresVerifyAsksEveryDatabase(t *testing.T) {
	for name, tc := range map[string]struct {
		dbs     string
		wantOut string
		wantErr string
	}{
		"all answer":         {dbs: "postgres\\nmy db\\ntemplate1", wantOut: "3 databases answer"},
		"one does not":       {dbs: "postgres\\nbroken", wantErr: "snapgate postgres: database broken does not answer"},
		"the server is down": {dbs: "", wantErr: "server down"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			// The stand-in lists tc.dbs for the catalog of databases, and
			// refuses the database named broken.
			psql := "#!/bin/sh\ndb=\nwhile [ $# -gt 0 ]; do case $1 in -d) db=$2; shift;; esac; shift; done\n" +
				"[ -n '" + tc.dbs + "' ] || { echo 'server down' >&2; exit 2; }\n" +
				"[ \"$db\" = broken ] && exit 2\n[ \"$db\" = postgres ] && printf '" + tc.dbs + "\\n'\nexit 0\n"
			if err := os.WriteFile(filepath.Join(dir, "psql"), []byte(psql), 0o755); err != nil {
				t.Fatal(err)
			}
			argv := All["postgres"].Verify
			cmd := exec.Command(argv[0], argv[1:]...)
			cmd.Env = []string{"PATH=" + dir + ":/usr/bin:/bin", "POSTGRES_PASSWORD=pw"}
			out, err := cmd.CombinedOutput()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(string(out), tc.wantErr) {
					t.Fatalf("check passed or said %q; want a failure saying %q", out, tc.wantErr)
				}
				return
			}
			if err != nil || strings.TrimSpace(string(out)) != tc.wantOut {
				t.Fatalf("check: %v: %q; want %q", err, out, tc.wantOut)
			}
		})
	}
}
