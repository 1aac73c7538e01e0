// Package pkg follows docs/events.md and MISSING.md.
package pkg

// X is cited in ../README.md and in its string.
var X = "see STYLE.md"
