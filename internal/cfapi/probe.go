package cfapi

import (
	"context"
	"fmt"
	"net/url"
)

// Calls that check an account before the reconciler runs against it
// (reconciler doctor): the token, a script's details and removing a
// script the check created.

// Endpoint names of those calls.
const (
	EPDeleteScript = "delete_script"
)

// TokenStatus is the answer of GET /user/tokens/verify: the token's id and
// status ("active" for a usable token). It never holds the token.
type TokenStatus struct {
	ID        string `json:"id"`
	Status    string `json:"status"`
	NotBefore string `json:"not_before,omitempty"`
	ExpiresOn string `json:"expires_on,omitempty"`
}

// VerifyToken asks the API whether the client's API token is valid:
// GET /user/tokens/verify. It is for token authentication only.
func (c *Client) VerifyToken(ctx context.Context) (*TokenStatus, error) {
	var t TokenStatus
	if err := c.doJSON(ctx, call{endpoint: EPVerifyToken, method: "GET", path: "/user/tokens/verify"}, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// ScriptDetails is GET …/dispatch/namespaces/{ns}/scripts/{script}: when
// the script was created and last modified.
type ScriptDetails struct {
	CreatedOn  string `json:"created_on"`
	ModifiedOn string `json:"modified_on"`
}

// GetScriptDetails reads a dispatch namespace script's details. Ordinary
// Workers have no such route (their details come with the account's
// script list), so ref must name a dispatch namespace script.
func (c *Client) GetScriptDetails(ctx context.Context, ref ScriptRef) (*ScriptDetails, error) {
	if !ref.Dispatch() {
		return nil, fmt.Errorf("script details of %s: only dispatch namespace scripts have a details route", ref)
	}
	var d ScriptDetails
	if err := c.doJSON(ctx, call{endpoint: EPGetScript, method: "GET", path: ref.scriptPath()}, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// DeleteScript removes a script with its versions and bindings:
// DELETE …/scripts/{script}?force=true (force: even when other scripts'
// bindings name it). A missing script is an error matched by
// ErrNotFound.
func (c *Client) DeleteScript(ctx context.Context, ref ScriptRef) error {
	return c.doJSON(ctx, call{endpoint: EPDeleteScript, method: "DELETE", path: ref.scriptPath(), write: true,
		query: url.Values{"force": {"true"}}, noResult: true}, &struct{}{})
}
