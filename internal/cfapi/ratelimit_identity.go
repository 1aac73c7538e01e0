package cfapi

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Endpoint names of the identity lookups.
const (
	EPGetUser     = "get_user"
	EPVerifyToken = "verify_token"
)

// BudgetIdentity returns the identity the API counts the rate limit by,
// for a shared budget's key: "user:" and the user id from GET /user, or
// when the token may not read the user (403), "token:" and the token's id
// from GET /user/tokens/verify. The answer is found once per Client and
// cached; a failure is not cached.
func (c *Client) BudgetIdentity(ctx context.Context) (string, error) {
	c.identity.mu.Lock()
	defer c.identity.mu.Unlock()
	if c.identity.id != "" {
		return c.identity.id, nil
	}
	var user struct {
		ID string `json:"id"`
	}
	err := c.doJSON(ctx, call{endpoint: EPGetUser, method: "GET", path: "/user"}, &user)
	if err == nil && user.ID != "" {
		c.identity.id = "user:" + user.ID
		return c.identity.id, nil
	}
	var apiErr *APIError
	if err != nil && !(errors.As(err, &apiErr) && (apiErr.StatusCode == 403 || apiErr.StatusCode == 401 || apiErr.StatusCode == 404)) {
		return "", fmt.Errorf("finding the API user of the budget: %w", err)
	}
	var tok struct {
		ID string `json:"id"`
	}
	if err := c.doJSON(ctx, call{endpoint: EPVerifyToken, method: "GET", path: "/user/tokens/verify"}, &tok); err != nil {
		return "", fmt.Errorf("finding the API user of the budget (GET /user, then /user/tokens/verify): %w", err)
	}
	if tok.ID == "" {
		return "", errors.New("finding the API user of the budget: /user/tokens/verify answered without an id")
	}
	c.identity.id = "token:" + tok.ID
	return c.identity.id, nil
}

// identityCache holds the answer of BudgetIdentity.
type identityCache struct {
	mu sync.Mutex
	id string
}
