"""Demo data for the use cases that have a maker (``demo.maker`` in their conf): the
deterministic random draws makers are built from (``draws``), writing their rows into the
landing zone as an upstream export would deliver them (``writer``), and running a use
case's maker (``maker``). The makers themselves live in their use case's folder: the
library knows no business."""
