// Command version prints the linked-in release version. The image tests
// build it in place of the manager: it cross-compiles in a second where the
// manager takes minutes cold, and it runs without a cluster to show that
// -X reached internal/version.
package main

import (
	"fmt"

	"github.com/responsibility-operator/responsibility-operator/internal/version"
)

func main() {
	fmt.Println(version.Get())
}
