// Package logging builds the process logger of the reconciler's commands:
// console lines on a terminal, JSON lines otherwise, unless the format
// says which. It never logs anything itself; what callers log is theirs
// to keep free of secrets.
package logging
