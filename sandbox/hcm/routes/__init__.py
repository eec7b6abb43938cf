"""The HCM twin's Workday REST resources, one module each; `create_app` registers them on one
router in this order: workers (list/changed window, one worker), termination (terminate,
rescind), rehire."""
