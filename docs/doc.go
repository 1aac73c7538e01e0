// Package docs holds the project's documentation in Markdown: the event
// contract, the architecture, configuration, operations, deployment, the
// guarantees and their tests, performance figures and the emulator's model.
//
// It has no code. Its test is the contract: every Markdown file that a Go
// comment or string, README.md, CONTRIBUTING.md or a file of docs/ cites
// must exist in the repository, and every relative link of those Markdown
// files (with its #anchor, when it points into a Markdown file) must
// resolve. A citation resolves relative to the citing file's directory or
// to the repository root; addresses with a scheme (https://…) are not
// checked.
package docs
