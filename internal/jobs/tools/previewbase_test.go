package tools

import (
	"context"
	"strings"
	"testing"
)

// TestChooseBaseWithoutPipeline: with no pipeline reachable previews
// start fresh and say why; --stored then fails naming where no pipeline
// answered; --no-stored says so.
func TestChooseBaseWithoutPipeline(t *testing.T) {
	ctx := context.Background()
	b, pl, err := ChooseBase(ctx, BaseChoice{EmbeddedListen: "127.0.0.1:4222"})
	if err != nil || pl == nil || b.Stored || !strings.Contains(b.Text, "no pipeline reachable") {
		t.Errorf("default: %+v %v", b, err)
	}
	if _, _, err := ChooseBase(ctx, BaseChoice{Stored: true, EmbeddedListen: "127.0.0.1:4222"}); err == nil || !strings.Contains(err.Error(), "--stored: no running reconciler reachable at 127.0.0.1:4222") {
		t.Errorf("--stored without a pipeline: %v", err)
	}
	if b, _, err := ChooseBase(ctx, BaseChoice{NoStored: true}); err != nil || !strings.Contains(b.Text, "(--no-stored)") {
		t.Errorf("--no-stored: %+v %v", b, err)
	}
}
