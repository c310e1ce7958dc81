"""Where configs come from: the search path (the user's folder first), the group choices, field docs."""
