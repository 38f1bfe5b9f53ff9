// Package evaluate is the operator's pure core: it compiles ResponsibilityModels
// (selectors, CEL rules), decides which models match an object, evaluates the
// customer duties and computes the annotations and labels the object should
// carry. It never talks to the API server: it takes plain values and returns
// plain values, so every decision is table-tested without a cluster.
package evaluate
