package devcluster

import (
	"context"
	"encoding/json"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// WriteStatus writes the status of every object that has one, as the
// object's own controller would. A local control plane runs no upstream
// controller, and the API server drops the status of a create or apply to a
// kind with a status subresource; so a sample whose duty reads evidence from
// status (a VirtualMachineSnapshot that is ready to use) states it in the
// file, and whoever creates the samples calls this after creating them.
// Objects without a status are passed over.
func WriteStatus(ctx context.Context, c client.Client, objects []*unstructured.Unstructured) error {
	for _, o := range objects {
		status, ok := o.Object["status"]
		if !ok {
			continue
		}
		patch, err := json.Marshal(map[string]any{"status": status})
		if err != nil {
			return fmt.Errorf("encode status of %s %s/%s: %w", o.GetKind(), o.GetNamespace(), o.GetName(), err)
		}
		target := &unstructured.Unstructured{}
		target.SetGroupVersionKind(o.GroupVersionKind())
		target.SetNamespace(o.GetNamespace())
		target.SetName(o.GetName())
		err = c.Status().Patch(ctx, target, client.RawPatch(types.MergePatchType, patch))
		if apierrors.IsNotFound(err) && c.Get(ctx, client.ObjectKeyFromObject(target), target) == nil {
			// A kind without a status subresource (a Velero Schedule)
			// stores the status with the object itself: the create kept
			// it, and a patch of the object writes this one (the sample's
			// times moved to now, see samples.Shift).
			err = c.Patch(ctx, target, client.RawPatch(types.MergePatchType, patch))
		}
		if err != nil {
			return fmt.Errorf("write status of %s %s/%s: %w", o.GetKind(), o.GetNamespace(), o.GetName(), err)
		}
	}
	return nil
}

// Create creates an object and then writes its status, as WriteStatus does.
// obj is left as the API server returned it, with the status written.
func Create(ctx context.Context, c client.Client, obj *unstructured.Unstructured) error {
	status, ok := obj.Object["status"]
	if err := c.Create(ctx, obj); err != nil {
		return err //nolint:wrapcheck // the caller names the object
	}
	if !ok {
		return nil
	}
	obj.Object["status"] = status
	return WriteStatus(ctx, c, []*unstructured.Unstructured{obj})
}
