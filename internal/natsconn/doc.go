// Package natsconn turns the NATS connection options that natscli and
// nats.go users know (a natscli context, a .creds file, an NKey seed,
// user and password, a token, TLS CA and client certificate) into a
// connection.
//
// Contract:
//   - Options.Register adds every option as a flag whose default comes
//     from its environment variable, so a flag wins over its variable.
//     A natscli context (--nats-context) fills only what neither a flag
//     nor a variable gave.
//   - Options.Connect checks every file before dialling: a file that is
//     missing or malformed is an error naming the option and the file,
//     and a credential the server refuses is an error naming the option
//     that supplied it.
//   - No error, log line or String() of Options ever holds a password,
//     token, seed or JWT; URLs are shown with their user information
//     replaced by "***" (RedactURL).
//   - Credentials files (.creds, NKey seed) are re-read by nats.go on each
//     reconnect, so a Secret rotated in place is picked up without a
//     restart.
//
// Limits (limits.go) holds the stream and bucket sizes that the NATS
// definitions in deploy/nats and the setup of `reconciler run` share.
package natsconn
