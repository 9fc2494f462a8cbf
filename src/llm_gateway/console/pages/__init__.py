"""One module per console page (or pair of pages): each an ``APIRouter`` of ``ConsoleRoute`` routes."""
