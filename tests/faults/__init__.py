"""The fault suite: a real `improve up` driven by email while its parts are killed."""
