package cfapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// ScriptInfo is one entry of a dispatch namespace's script list.
type ScriptInfo struct {
	ID         string   `json:"id"`
	CreatedOn  string   `json:"created_on,omitempty"`
	ModifiedOn string   `json:"modified_on,omitempty"`
	Tags       []string `json:"tags,omitempty"`
}

// ListScriptsOptions filters and pages a script list.
type ListScriptsOptions struct {
	// Tags filters by tag: "name:yes" includes, "name:no" excludes.
	Tags []string
	// Limit is the page size (at most 1000; 0 lets the API choose).
	Limit int
	// Cursor continues from the previous page.
	Cursor string
}

// MaxListLimit is the largest page the API serves.
const MaxListLimit = 1000

// ListScripts returns one page of the scripts in a dispatch namespace and
// the cursor of the next page ("" after the last page). When the answer
// has no cursor member and the page may not be the last (no limit given,
// or a full page), it returns the page with an error wrapping
// ErrListCursorMissing (see IsListUnsupported).
func (c *Client) ListScripts(ctx context.Context, accountID, namespace string, opts ListScriptsOptions) ([]ScriptInfo, string, error) {
	if opts.Limit > MaxListLimit {
		return nil, "", fmt.Errorf("list scripts: limit %d is over the API's maximum of %d", opts.Limit, MaxListLimit)
	}
	q := url.Values{}
	if len(opts.Tags) > 0 {
		q.Set("tags", strings.Join(opts.Tags, ","))
	}
	if opts.Limit > 0 {
		q.Set("limit", strconv.Itoa(opts.Limit))
	}
	if opts.Cursor != "" {
		q.Set("cursor", opts.Cursor)
	}
	path := "/accounts/" + url.PathEscape(accountID) + "/workers/dispatch/namespaces/" + url.PathEscape(namespace) + "/scripts"
	cl := call{endpoint: EPListScripts, method: "GET", path: path, query: q}
	env, err := c.do(ctx, cl)
	if err != nil {
		return nil, "", err
	}
	var page []ScriptInfo
	if err := env.decodeResult(cl, &page); err != nil {
		return nil, "", err
	}
	var info struct {
		Cursor *string `json:"cursor"`
	}
	if len(env.ResultInfo) > 0 {
		_ = json.Unmarshal(env.ResultInfo, &info)
	}
	if info.Cursor == nil {
		if opts.Limit == 0 || len(page) >= opts.Limit {
			return page, "", fmt.Errorf("list scripts of %s: %w", namespace, ErrListCursorMissing)
		}
		return page, "", nil
	}
	return page, *info.Cursor, nil
}

// EachScript calls fn for every script of a dispatch namespace, following
// the cursor page by page; it stops at the first error fn returns.
func (c *Client) EachScript(ctx context.Context, accountID, namespace string, opts ListScriptsOptions, fn func(ScriptInfo) error) error {
	seen := map[string]bool{}
	for {
		page, next, err := c.ListScripts(ctx, accountID, namespace, opts)
		if err != nil {
			return err
		}
		for _, s := range page {
			if err := fn(s); err != nil {
				return err
			}
		}
		if next == "" || len(page) == 0 {
			return nil
		}
		if seen[next] {
			return fmt.Errorf("list scripts of %s: the API returned cursor %q twice", namespace, next)
		}
		seen[next] = true
		opts.Cursor = next
	}
}
