package jobs

import (
	"go.uber.org/zap"
)

// Fallbacks where the API behaves unlike what the reconciler assumed
// where its reference is silent (cfapi's guesses.go; `reconciler doctor`
// checks them on an account):
//
//   - The dispatch namespace script list answers 404 or 405, or cannot be
//     paged (cfapi.IsListUnsupported): a resync then reads every script
//     it knows, as it does for ordinary Workers. The process remembers it
//     and lists no namespace again, so one warning says it, not one per
//     resync and namespace.

// noteListUnsupported records that the API does not serve the namespace
// script list, and warns the first time.
func (r *Runner) noteListUnsupported(namespace string, err error) {
	if r.listUnsupported.CompareAndSwap(false, true) {
		r.log.Warn("the API does not serve the dispatch namespace script list (or it cannot be paged): resync reads every script from now on, "+
			"one GET settings each, and does not list again until restart (run `reconciler doctor`)",
			zap.String("namespace", namespace), zap.Error(err))
	}
}
