"""The interactive analysis session on an output file (:class:`~smalldata.ana.session.SmallDataAna`)."""
