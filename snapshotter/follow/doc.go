// Package follow follows snapshot sets to ready after their change was
// admitted. A set admitted once it was cut (snapgate.io/wait-for: cut, for
// backends that upload for minutes or hours) is told ready when it gets
// there; any set whose snapshot fails, or that is not ready by the ready
// deadline, is told on its StatefulSet as a Warning Event and a metric, and
// marked on its snapshots so that `snapgate list` shows it. It owns no
// snapshot: it reads them from the manager's cache and writes one annotation.
package follow
