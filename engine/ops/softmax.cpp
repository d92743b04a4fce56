// placeholder: implemented by the ops work (see ops.hpp)
