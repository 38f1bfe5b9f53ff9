// Package evidence is what an auditor is handed: a snapshot of the shared
// responsibility matrices the cluster holds and of the live state of every
// customer duty on every object, with the time of collection; and its
// renderings: OSCAL documents, CSV and a self-contained HTML report. It is
// pure: the kubectl plugin collects a Snapshot from the cluster, and the
// renderings read nothing else.
package evidence

import "time"

// Snapshot is the evidence of one collection.
type Snapshot struct {
	// CollectedAt is when the objects were read.
	CollectedAt time.Time `json:"collectedAt"`
	// Cluster names the cluster (the kubeconfig context), when known.
	Cluster string `json:"cluster,omitempty"`
	// Namespace is the namespace collected; empty for the whole cluster.
	Namespace string `json:"namespace,omitempty"`
	// Models are the ResponsibilityModels, sorted by name.
	Models []Model `json:"models"`
	// Namespaces are the namespaces with evaluated objects or waivers,
	// sorted by name.
	Namespaces []Namespace `json:"namespaces"`
}

// Model is one service's matrix.
type Model struct {
	Name        string `json:"name"`
	Service     string `json:"service"`
	Provider    string `json:"provider"`
	Description string `json:"description,omitempty"`
	// Waivers is the model's spec.waivers (Allowed when unset).
	Waivers string `json:"waivers"`
	// Areas are in the model's order.
	Areas []Area `json:"areas"`
}

// Area is one row of a matrix.
type Area struct {
	Name     string    `json:"name"`
	Provider string    `json:"provider"`
	Customer string    `json:"customer"`
	Controls []Control `json:"controls,omitempty"`
	// Duties are the checkable customer duties of the area, in spec order.
	Duties []Duty `json:"duties,omitempty"`
}

// Control is a framework control an area addresses.
type Control struct {
	Framework string `json:"framework"`
	ID        string `json:"id"`
	URL       string `json:"url,omitempty"`
}

// Duty is a checkable customer duty.
type Duty struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Severity is Warning or Info.
	Severity string `json:"severity"`
}

// Namespace is the evidence of one namespace.
type Namespace struct {
	Name string `json:"name"`
	// Objects are the evaluated objects, sorted by kind then name.
	Objects []Object `json:"objects"`
	// Waivers are the DutyWaivers and waiver annotations of the namespace.
	Waivers []Waiver `json:"waivers,omitempty"`
}

// Object is one evaluated object and the state of each of its duties, as
// the operator's duties annotation says.
type Object struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Name       string `json:"name"`
	UID        string `json:"uid,omitempty"`
	// Models are the models matching it, sorted.
	Models []string `json:"models"`
	// Duties are sorted by model then duty.
	Duties []DutyState `json:"duties"`
	// Problem says why the duties annotation could not be read (it is not
	// the operator's JSON: someone edited it); Duties is then empty.
	Problem string `json:"problem,omitempty"`
}

// DutyState is the state of one duty on one object.
type DutyState struct {
	Model string `json:"model"`
	Duty  string `json:"duty"`
	// State is Met, Unmet, Unknown or Waived.
	State   string `json:"state"`
	Message string `json:"message,omitempty"`
	// Waiver names the DutyWaiver that waived it, if one did.
	Waiver string `json:"waiver,omitempty"`
}

// Waiver is one waiver: a DutyWaiver or a waiver annotation.
type Waiver struct {
	// Source is "DutyWaiver" or "annotation".
	Source string `json:"source"`
	// Name is the DutyWaiver's name, or the annotated object (kind/name).
	Name      string     `json:"name"`
	Model     string     `json:"model,omitempty"`
	Duties    []string   `json:"duties"`
	Reason    string     `json:"reason"`
	Ticket    string     `json:"ticket,omitempty"`
	GrantedBy string     `json:"grantedBy,omitempty"`
	Expires   *time.Time `json:"expires,omitempty"`
	// Active is True when it applies at CollectedAt; else why not.
	Active string `json:"active"`
	// Message says why the waiver does not apply, when the operator or the
	// model's waiver policy says so.
	Message string `json:"message,omitempty"`
}
