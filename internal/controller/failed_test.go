package controller

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
)

// An object whose write the API server keeps refusing (422 Invalid, as an
// admission policy or an object too large once annotated gets) is counted
// in its model's status.failedObjects, named in the Ready message, and
// retried until the refusal stops; then it is counted like the others.
// Fails if a refused object is silently missing from the counts, or if its
// retries stop.
func TestRefusedObjectsAreCounted(t *testing.T) {
	var refuse atomic.Bool
	refuse.Store(true)
	wrap := func(rt http.RoundTripper) http.RoundTripper {
		return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
			if refuse.Load() && req.Method == http.MethodPatch && strings.HasSuffix(req.URL.Path, "/dragonflies/refused") {
				if req.Body != nil {
					_ = req.Body.Close()
				}
				return faultResponse(req, http.StatusUnprocessableEntity), nil
			}
			return rt.RoundTrip(req)
		})
	}
	ns := newNamespace(t, map[string]string{"test": "refused"})
	accepted := createObject(t, dragonfly, "Dragonfly", ns, "accepted", nil, map[string]any{"replicas": int64(1)})
	refused := createObject(t, dragonfly, "Dragonfly", ns, "refused", nil, map[string]any{"replicas": int64(1)})
	t.Cleanup(func() { deleteObjects(accepted, refused) })
	startManagerWith(t, managerSetup{wrapTransport: wrap})
	const model = "refused-cache"
	applyModel(t, cacheModel(model, "refused"))

	waitModel(t, model, 20*time.Second, func(rm *v1alpha1.ResponsibilityModel) error {
		ready := meta.FindStatusCondition(rm.Status.Conditions, v1alpha1.ConditionReady)
		switch {
		case rm.Status.FailedObjects != 1 || rm.Status.MatchedObjects != 1:
			return fmt.Errorf("matched %d, failed %d; want 1 and 1", rm.Status.MatchedObjects, rm.Status.FailedObjects)
		case ready == nil || !strings.Contains(ready.Message, "Dragonfly/"+ns+"/refused") || !strings.Contains(ready.Message, "injected fault 422"):
			return fmt.Errorf("Ready condition %+v does not name the refused object and its error", ready)
		}
		return nil
	})
	if n := eventCount(eventsFor(t, refused, v1alpha1.EventApplyFailed)); n == 0 {
		t.Errorf("no ApplyFailed event on the refused object")
	}

	refuse.Store(false)
	waitAnnotation(t, refused, v1alpha1.AnnotationModels, model, true)
	waitModel(t, model, 20*time.Second, func(rm *v1alpha1.ResponsibilityModel) error {
		if rm.Status.FailedObjects != 0 || rm.Status.MatchedObjects != 2 {
			return fmt.Errorf("matched %d, failed %d; want 2 and 0", rm.Status.MatchedObjects, rm.Status.FailedObjects)
		}
		return nil
	})
}
