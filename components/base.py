"""What every component here shares: children parented to it, and the caller's
``depends_on`` carried down to those children and to the component's lookups
(invokes); Pulumi does neither itself."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi

TYPE_PREFIX = "fraud-mlops"


class Component(pulumi.ComponentResource):
    def __init__(self, kind: str, name: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(f"{TYPE_PREFIX}:gcp:{kind}", name, None, opts)
        self._name = name
        deps = opts.depends_on if opts is not None else None
        if deps is None:
            self._deps: list[pulumi.Resource] = []
        elif isinstance(deps, pulumi.Resource):
            self._deps = [deps]
        elif isinstance(deps, Sequence):
            self._deps = [d for d in deps if isinstance(d, pulumi.Resource)]
        else:  # an Output of resources: Pulumi resolves it, children need not
            self._deps = []

    def child(
        self,
        *,
        depends_on: Sequence[pulumi.Resource] = (),
        protect: bool = False,
        delete_before_replace: bool | None = None,
        ignore_changes: list[str] | None = None,
    ) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(
            parent=self,
            depends_on=[*self._deps, *depends_on],
            protect=protect,
            delete_before_replace=delete_before_replace,
            ignore_changes=ignore_changes,
        )

    def lookup(self) -> pulumi.InvokeOutputOptions:
        """Options for the component's data-source lookups (``get_*_output``).

        A lookup calls a Google API as soon as the program reaches it, so on a new
        project it must wait for what the caller made the component wait for: the
        enabled APIs (a lookup before its API is on fails the first ``pulumi up``).
        """
        return pulumi.InvokeOutputOptions(parent=self, depends_on=list(self._deps))

    def n(self, suffix: str) -> str:
        """A child's logical name, derived from the component's."""
        return f"{self._name}-{suffix}"
