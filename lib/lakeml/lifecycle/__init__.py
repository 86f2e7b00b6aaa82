"""The model lifecycle after training: the validation gate (``gate``), promotion by hand
(``promote``), the retraining policy (``policy``) and the audit trail (``decisions``)."""
