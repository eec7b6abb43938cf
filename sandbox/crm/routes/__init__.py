"""The CRM twin's Salesforce REST resources, one module each; `create_app` registers them on
one router in this order: sObject rows, rows by external ID, sObject basic (create), query."""
